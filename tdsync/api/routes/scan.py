"""Scan routes (sync-schemas); filled in by the scan issue."""

from fastapi import APIRouter

router = APIRouter()
