"""`make chaos` and `make soak`: a steady stream of engine-like tasks against a stack of its
own, with faults struck at random moments (chaos) or none (soak), and every task checked
at the end. See docs/reliability.md."""
