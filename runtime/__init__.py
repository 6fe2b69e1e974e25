"""Process plumbing shared by the worker and the CLI; nothing here runs inside a workflow."""
