"""The naive thread-and-queue app, the baseline of latency.py and burst.py: a FastAPI app
streaming a child's output to WebSockets the naive way. uvicorn runs this source from a temp
file (`servers.start_naive`)."""

import textwrap

NAIVE_APP = textwrap.dedent(
    '''
    """The naive pattern: a thread reads the child's stdout with a
    blocking readline (and prints it, to keep the terminal output), puts each line in a
    queue.Queue; one broadcaster task does `await loop.run_in_executor(None, q.get)`
    and `await ws.send_text(line)` to every connected WebSocket."""
    import asyncio, json, os, queue, subprocess, threading
    from contextlib import asynccontextmanager
    from fastapi import FastAPI, WebSocket, WebSocketDisconnect

    CHILD = json.loads(os.environ["NAIVE_CHILD"])
    log_queue: queue.Queue = queue.Queue()
    active_log_sockets: list = []
    state: dict = {"process": None}


    def log_reader_thread(process, q):
        try:
            for line in iter(process.stdout.readline, ""):
                print(line, end="")
                q.put(line)
        finally:
            q.put(None)


    async def websocket_broadcaster(q):
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, q.get)
            if line is None:
                continue
            text = line.rstrip("\\n")
            dead = []
            for ws in list(active_log_sockets):
                try:
                    await ws.send_text(text)
                except Exception:
                    dead.append(ws)
            for ws in dead:
                if ws in active_log_sockets:
                    active_log_sockets.remove(ws)


    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(websocket_broadcaster(log_queue))
        yield
        task.cancel()
        log_queue.put(None)  # release the executor thread blocked in q.get
        p = state["process"]
        if p is not None and p.poll() is None:
            p.kill()


    app = FastAPI(lifespan=lifespan)


    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}


    @app.get("/stats")
    async def stats():
        return {"subscribers": len(active_log_sockets)}


    @app.post("/start")
    async def start_service():
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        process = subprocess.Popen(
            CHILD, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            encoding="utf-8", errors="replace", env=env,
        )
        state["process"] = process
        threading.Thread(target=log_reader_thread, args=(process, log_queue), daemon=True).start()
        return {"pid": process.pid}


    @app.websocket("/ws/logs")
    async def websocket_log_endpoint(websocket: WebSocket):
        await websocket.accept()
        active_log_sockets.append(websocket)
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            if websocket in active_log_sockets:
                active_log_sockets.remove(websocket)
    '''
)
