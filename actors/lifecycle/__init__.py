"""Actors that outlive runs: the embed pool, parked parser actors, the kept ontology actor.

- `names`: their one namespace, the key in their names (`actor_key`: the settings they are
  built with and the pool plan, so a run only ever finds actors it could have started
  itself), listing and removing them by name.
- `parking`: a run parks its idle parser actors at its end and the next run claims them.
- `idle`: an actor with no work for its idle time leaves and gives its CPUs or GPUs back.
- `liveness`: whether the run that holds an actor still lives (its aggregator answers).
"""
