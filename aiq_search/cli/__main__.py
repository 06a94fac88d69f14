import sys

from aiq_search.cli._main import entry_point

if __name__ == "__main__":
    sys.argv[0] = "aiq-search"
    entry_point()
