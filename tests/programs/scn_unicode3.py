# Scenario 6 of scenarios.py on Python 3: non-ASCII function names (latin-1 and CJK, so the
# interpreter stores them as 1-byte and 2-byte strings). The test copies this file to a
# non-ASCII path (a directory with U+1F40D, 4-byte, and the file scn_ünïcode_模块.py).
import time


def entry(ctx):
    café(ctx)  # @unicode_entry_call


def café(ctx):
    naïve_ünïcode_函数(ctx)  # @unicode_cafe_call


def naïve_ünïcode_函数(ctx):
    ctx.record("unicode_sleep")
    time.sleep(1000)  # @unicode_sleep
