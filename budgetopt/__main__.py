"""``budgetopt`` and ``python -m budgetopt``: signals are routed (core/interrupts.py) before the
CLI, and anything it imports, is loaded."""


def main() -> None:
    from .core.interrupts import route_signals

    route_signals()
    from .cli.commands import cli_main

    cli_main()


if __name__ == "__main__":
    main()
