"""Tests of the function app: the function folders, app selection, function_app.py, VS Code."""
