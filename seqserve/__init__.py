"""seqserve: shared API (generated from protos/) and the command-line entry point."""
