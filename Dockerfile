# Sluice control plane image: a static binary on a distroless, non-root base.
# No Docker engine runs on the project's build machines, so this file is not
# built in CI here; `make image` runs it where an engine exists.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/sluice ./cmd/sluice

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sluice /usr/local/bin/sluice
USER 65532:65532
EXPOSE 15010 15014
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["serve"]
