"""int8 networks: the integer arithmetic (`reference`, in numpy), its Relax form (`ops`), and the int8
early-exit network built from a QDQ model (`network`). docs/int8.md states the arithmetic in full."""
