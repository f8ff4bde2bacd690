"""`python -m memanto_server.cli.memanto`: the `memanto` command."""

from memanto_server.cli.memanto.main import main

main()
