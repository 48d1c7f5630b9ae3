// Package demo provides `pgkill demo`: the real bot (bot.Serve, Socket Mode
// over a real WebSocket) against bot/localslack, Slack on a loopback port
// with the run's own tokens, and a real PostgreSQL playing an incident,
// with a local web page that shows the channels as Slack would. Its parts:
// Render and RenderModal, a Block Kit → HTML renderer (pure; golden-tested
// over every message blocks produces and the reason form); the page
// (Page), loopback only and closed to other web sites (bot/loopback), with
// live updates, an identity switch, a /pgkill box, buttons that click and
// modals that submit; the incident (Incident); and Start (and Command, the
// subcommand), which start and stop them all.
package demo
