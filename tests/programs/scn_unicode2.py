# Scenario 6 of scenarios.py on Python 2.7, which allows ASCII identifiers only: the same calls
# as scn_unicode3.py under ASCII names. The test copies this file to a non-ASCII path.
import time


def entry(ctx):
    cafe(ctx)  # @unicode_entry_call


def cafe(ctx):
    naive_unicode_func(ctx)  # @unicode_cafe_call


def naive_unicode_func(ctx):
    ctx.record("unicode_sleep")
    time.sleep(1000)  # @unicode_sleep
