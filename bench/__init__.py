"""Benchmarks of hook-processor's S3 stage-in and publication against s5cmd and aws-cli (issue 7).

Run ``python -m bench --help``; see bench/README.md.
"""
