"""Performance cases against their yardsticks; ``python -m bench.speed.run`` (``make bench``)
prints them all in one table, each module also runs alone (``python -m bench.speed.<case>``)."""
