"""One module per `thinker4d` verb, each with `make_parser()` and `main(argv=None)`."""
