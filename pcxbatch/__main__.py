"""``python -m pcxbatch`` runs the command line."""

from pcxbatch.cli import main

if __name__ == "__main__":
    main()
