import DXControl
import DXProtocol
import DXSimulator
import DXTransport
import Foundation
import Logging
import ServiceLifecycle

/// The whole daemon, assembled from its configuration: device link, optional embedded
/// simulator and the control socket, as services that start in order and stop in reverse
/// (SIGTERM: the control server cancels running scans, the device service sends XRAY_OFF,
/// then the simulator goes).
public struct Daemon: Sendable {
    public let configuration: DaemonConfiguration
    public let logger: Logger

    public init(configuration: DaemonConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        let clock = ScaledClock(speed: configuration.timeScale)
        if configuration.timeScale != 1 {
            logger.notice("time runs \(configuration.timeScale)× faster than real time (simulator use only)")
        }
        if configuration.recordCaptures {
            do { try FileManager.default.createDirectory(atPath: configuration.captureDirectory, withIntermediateDirectories: true) } catch {
                logger.error("cannot create capture directory; captures disabled", metadata: ["path": "\(configuration.captureDirectory)", "error": "\(error)"])
            }
        }
        var services: [any Service] = []
        let transport: any DeviceTransport
        switch configuration.device {
        case .embeddedSimulator:
            let sim = EmbeddedSimulator(configuration: SimulatorConfiguration(seed: configuration.simulatorSeed), clock: clock)
            transport = sim.transport
            services.append(EmbeddedSimulatorService(run: { await sim.run() }, stop: { sim.shutdown() }))
        case .simulatorSocket(let path):
            transport = SimLinkTransport(path: path)
        }
        let device = DeviceService(transport: transport, configuration: configuration, clock: clock, logger: logger)
        services.append(device)
        let handler = DaemonControlHandler(device: device, deviceName: transport.name, logger: logger)
        let server = ControlServer(path: configuration.socketPath, handler: handler, logger: logger)
        services.append(ControlService(server: server))
        let group = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
        logger.notice("dexad stopped")
    }
}

/// The control socket as a service.
struct ControlService: Service {
    let server: ControlServer
    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { try await server.run() }
        } catch where Task.isCancelled || Task.isShuttingDownGracefully || error is CancellationError {
            // Stopping is what was asked for.
        }
    }
}
