"""The baseline for bench/home_rps.py: a bare FastAPI hello-world endpoint."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}
