"""``budgetopt`` and ``python -m budgetopt``: signals are routed (interrupts.py) before the CLI,
and anything it imports, is loaded."""


def main() -> None:
    from .interrupts import route_signals

    route_signals()
    from .cli import main as run

    run()


if __name__ == "__main__":
    main()
