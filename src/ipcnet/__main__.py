"""``python -m ipcnet`` runs the command-line tool."""

from ipcnet.cli import entry

entry()
