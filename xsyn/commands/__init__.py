"""One module per ``xsyn`` subcommand: argument parsing and a call into the package."""
