"""``python -m ipcnet`` runs the command-line tool."""

try:
    from ipcnet.cli import entry
except KeyboardInterrupt:  # Ctrl-C while Python loads the command: 130, no traceback
    raise SystemExit(130) from None

entry()
