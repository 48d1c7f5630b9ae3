// Package demo provides `pgkill demo`: the real bot against a Slack on a
// loopback port (bot/localslack) and a real PostgreSQL playing an incident,
// shown on a local web page as Slack would show it.
package demo
