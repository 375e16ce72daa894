"""Native (C) stacks: call-frame information, unwinding, symbolization."""
