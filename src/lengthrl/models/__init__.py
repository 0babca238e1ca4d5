"""lengthrl.models"""
