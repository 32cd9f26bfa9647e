"""Entry points (`python launch/train.py ...`) and the launcher code they share (`launch.config_check`, `launch.run_dir`).

A package so that launchers, benchmarks and tests import each other by name (`from launch import train`), never
through `sys.path`. Nothing in `jepa/` imports it.
"""
