"""Pure protocol code: parsing and building wire formats, no I/O."""
