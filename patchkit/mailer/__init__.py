"""send-email: render a series revision as mail, gate it on test results, send it over SMTP, journal it."""
