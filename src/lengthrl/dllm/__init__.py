"""lengthrl.dllm"""
