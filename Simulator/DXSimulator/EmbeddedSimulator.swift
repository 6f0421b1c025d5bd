import DXProtocol
import DXTransport

/// A DX-1 in the same process: the firmware on one end of an `InMemoryLink`, the host's
/// `DeviceTransport` on the other. `dexad --simulator` and the unit tests use it.
public final class EmbeddedSimulator: Sendable {
    public let firmware: DX1Firmware
    public let link: InMemoryLink
    /// What the host opens; it cannot tell this from any other transport.
    public var transport: any DeviceTransport { link.host }

    public init(configuration: SimulatorConfiguration = .init(), clock: any Clock<Duration>, scene: any Scene = EmptyTable()) {
        link = InMemoryLink(name: "sim:embedded")
        firmware = DX1Firmware(configuration: configuration, clock: clock, scene: scene)
    }

    /// Powers the unit on and feeds it the host's bytes until cancelled.
    public func run() async {
        await firmware.powerOn(link: link.device)
        for await bytes in link.device.fromHost {
            if Task.isCancelled { break }
            await firmware.receive(bytes)
        }
    }

    public func inject(_ fault: InjectedFault) async { await firmware.inject(fault) }

    /// Tears the link down so that `run()` returns.
    public func shutdown() { link.device.shutdown() }
}
