# Build: the module download is its own layer, so code changes reuse it.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/pgkill .

# Run: a static binary on distroless, as the nonroot user; no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pgkill /pgkill
USER nonroot:nonroot
ENTRYPOINT ["/pgkill"]
CMD ["serve"]
