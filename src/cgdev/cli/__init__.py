"""Front end and dispatcher: each command parses its arguments (a ``HostView`` for the live ones),
calls one operation and renders the result through ``cgdev.present``; errors name fields, and
``cli.main.FLAGS`` spells them as flags."""
