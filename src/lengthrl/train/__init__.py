"""lengthrl.train"""
