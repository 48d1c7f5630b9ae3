// Package demo provides `pgkill demo`: the real bot (bot.Serve, Socket Mode
// over a real WebSocket) against the in-repo Slack stand-in bot/fakeslack and
// a real PostgreSQL playing an incident, with a local web page that shows the
// channel as Slack would. Its parts: Render and RenderModal, a Block Kit →
// HTML renderer (pure; golden-tested over every message blocks produces and
// the reason form); the page (Page), loopback only, with live updates, an
// identity switch, a /pgkill box, buttons that click and modals that submit;
// the incident (Incident); and Run, which starts and
// stops them all.
package demo
