# Sourced by the planning-table scripts (planning_tworooms.sh, planning_pointmaze.sh): `run NAME overrides...` runs
# one launch/plan.py job at one torch thread, writing its results to $OUT/NAME and its log to $OUT/NAME.log. The
# caller sets OUT, PLAN_BASE (arguments before the job's own, e.g. `--config-name plan_pointmaze_wm`; may be empty)
# and EXTRA (the caller's own overrides, applied last).
run() {
  local name=$1
  shift
  python launch/plan.py "${PLAN_BASE[@]}" threads=1 "output_dir=$OUT/$name" "$@" "${EXTRA[@]}" > "$OUT/$name.log" 2>&1
}
