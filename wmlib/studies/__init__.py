"""Experiments of the paper built on the core: the dream check (fixed policies, dream vs real), the
temperature sweep (Doom) and the ablation of C's inputs (CarRacing)."""
