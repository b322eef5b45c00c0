"""The `indexer` command line: parses arguments and hands each command to the head
(`indexer head`) or to the cluster side (add, index, submit, driver, demo)."""
