from evokd.cli import app

app()
