"""Price and weather providers behind one protocol each, speaking their real wire formats."""
