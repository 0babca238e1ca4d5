"""lengthrl.rollout"""
