"""lengthrl.advantages"""
