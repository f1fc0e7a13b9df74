"""What VMCOREINFO alone tells: address translation, memory model, printk. No type information."""
