"""The backends: `host` builds and runs TVM modules for llvm hosts."""
