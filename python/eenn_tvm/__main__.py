"""`python -m eenn_tvm` is the `eenn-tvm` command (what a script starts when it has the interpreter, not the PATH)."""

from eenn_tvm.cli import main

main()
