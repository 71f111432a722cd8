"""The supervisor console (监管控制台): a zh-CN web application served by the gateway, and the query API behind it.

``api`` holds the endpoints the console reads (cases, timelines, alerts, statistics, counterpart
health, delivery previews), ``pages`` the HTML shell and static assets, ``index`` the case index the
supervision follower keeps, ``evidence`` the per-case audit verification. docs/console.md is the
guide for operators and supervisors.
"""
