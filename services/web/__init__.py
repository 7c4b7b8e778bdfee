"""The web consoles: staff screen, member portal, privacy office, store analytics and admin (HTML over HTTP)."""
