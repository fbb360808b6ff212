"""The browser app (`python ui/app.py`) and its pictures; a package so app.py can import them."""
