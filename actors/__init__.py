"""Ray actors: one module per phase (fetch, render, analyze, embed, ontology), the progress
aggregator, and the pool policy that sizes them."""
