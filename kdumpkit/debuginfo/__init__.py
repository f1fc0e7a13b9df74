"""Debug information from the dump itself: BTF, kallsyms, ORC, global-variable types."""
