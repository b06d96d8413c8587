"""A chatty web service: uvicorn-style access lines, a few per second."""

import random
import time

paths = ["/", "/api/items", "/api/items/42", "/health", "/login", "/static/app.js"]
print("INFO:     Started server process")
print("INFO:     Application startup complete.")
print("INFO:     Uvicorn running on http://127.0.0.1:8000 (Press CTRL+C to quit)")
while True:
    path = random.choice(paths)
    status = random.choices([200, 201, 304, 404, 500], [70, 5, 10, 10, 5])[0]
    level = "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO"
    print(f'{level + ":":9} 127.0.0.1:{random.randint(30000, 60000)} - "GET {path} HTTP/1.1" {status}')
    if status == 500:
        print("Traceback (most recent call last):")
        print('  File "app.py", line 12, in handler')
        print("ZeroDivisionError: division by zero")
    time.sleep(random.uniform(0.05, 0.5))
