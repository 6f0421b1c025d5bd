import CLibUSB
import DXProtocol
import DXTransport
import Foundation
import Logging
import Synchronization

/// libusb errors in words (libusb_error_name).
func usbErrorName(_ code: Int32) -> String { String(cString: libusb_error_name(code)) }

/// A `DeviceTransport` over real USB: libusb asynchronous bulk transfers driven by one event
/// thread. While open, `inFlight` 16 KiB transfers stay queued on EP 0x82 and two on EP 0x81
/// (ICD §1: at least four on the data endpoint, so no data waits in the device). Each
/// transfer object owns its buffer for the whole flight; the completion callback takes the
/// bytes, hands them to the incoming stream and resubmits.
public final class USBTransport: DeviceTransport {
    public let match: USBDeviceMatch
    public let inFlight: Int
    public let transferSize: Int
    public let outTimeoutMs: UInt32
    private let logger: Logger
    private let state = Mutex<Link?>(nil)

    public var name: String { "usb" + (match.serial.map { ":" + $0 } ?? "") }

    public init(match: USBDeviceMatch = USBDeviceMatch(), inFlight: Int = 4, transferSize: Int = 16_384, outTimeoutMs: UInt32 = 1000,
                logger: Logger = Logger(label: "dexa.usb")) {
        self.match = match
        self.inFlight = max(4, inFlight)
        self.transferSize = transferSize
        self.outTimeoutMs = outTimeoutMs
        self.logger = logger
    }

    /// The device the transport would open now, if any.
    public func find() -> USBDeviceRecord? { UdevDiscovery.enumerate(match).first }

    public func open() async throws -> AsyncThrowingStream<TransportChunk, any Error> {
        await close()
        guard let record = find() else {
            throw TransportError.unreachable("no DX-1 (\(String(format: "%04x:%04x", match.vendorID, match.productID))\(match.serial.map { " serial \($0)" } ?? "")) is attached")
        }
        let link = try Link(record: record, transport: self)
        state.withLock { $0 = link }
        logger.info("USB device opened", metadata: ["device": "\(record.location)", "serial": "\(record.serial ?? "-")"])
        return link.stream
    }

    public func send(_ bytes: [UInt8]) async throws {
        guard let link = state.withLock({ $0 }) else { throw TransportError.notOpen }
        try await link.send(bytes)
    }

    public func close() async {
        let link = state.withLock { l in defer { l = nil }; return l }
        link?.shutdown(reason: "closed by host")
    }

    /// Waits until a matching device is attached (udev `add`), or `timeout` passes.
    public func waitForArrival(timeout: Duration) async {
        guard let monitor = UdevMonitor(match: match) else {
            try? await Task.sleep(for: timeout)
            return
        }
        defer { monitor.stop() }
        if find() != nil {
            // Attached but it did not open: try again soon, without spinning.
            try? await Task.sleep(for: .milliseconds(250))
            return
        }
        await withTaskGroup(of: Void.self) { group in
            let logger = self.logger
            group.addTask {
                for await change in monitor.changes {
                    if case .added(let r) = change {
                        logger.info("udev: DX-1 attached", metadata: ["device": "\(r.location)", "serial": "\(r.serial ?? "-")"])
                        return
                    }
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            monitor.stop()
            group.cancelAll()
        }
    }

    /// The record of the device currently open.
    public var openDevice: USBDeviceRecord? { state.withLock { $0?.record } }

    /// One open device: context, handle, event thread and transfers.
    final class Link: Sendable {
        let record: USBDeviceRecord
        let stream: AsyncThrowingStream<TransportChunk, any Error>
        private let continuation: AsyncThrowingStream<TransportChunk, any Error>.Continuation
        // The context and handle are plain C pointers owned by this link; libusb itself is
        // thread-safe for the calls made on them (submit, cancel, clear_halt, close). They are
        // freed by the event thread at the end: every call from another thread is made under
        // `open` and only while it is true, so none can land on a freed handle or context
        // (a send racing the device's loss once aborted dexad in libusb's mutex lock).
        private let context: UnsafeSendable<OpaquePointer>
        private let handle: UnsafeSendable<OpaquePointer>
        private let open = Mutex(true)
        private let running = Mutex(true)
        private let live = Mutex<Set<ObjectIdentifier>>([])
        private let transferSize: Int
        private let outTimeoutMs: UInt32
        private let logger: Logger
        private let eventThreadDone = Mutex<Bool>(false)

        init(record: USBDeviceRecord, transport: USBTransport) throws {
            self.record = record
            transferSize = transport.transferSize
            outTimeoutMs = transport.outTimeoutMs
            logger = transport.logger
            var ctx: OpaquePointer?
            let rc = libusb_init(&ctx)
            guard rc == 0, let ctx else { throw TransportError.io("libusb_init: \(usbErrorName(rc))") }
            var found: OpaquePointer?
            var list: UnsafeMutablePointer<OpaquePointer?>?
            let n = libusb_get_device_list(ctx, &list)
            if n > 0, let list {
                for i in 0..<n {
                    guard let dev = list[i] else { continue }
                    if Int(libusb_get_bus_number(dev)) == record.busnum && Int(libusb_get_device_address(dev)) == record.devnum {
                        var h: OpaquePointer?
                        let orc = libusb_open(dev, &h)
                        if orc == 0 { found = h } else {
                            libusb_free_device_list(list, 1)
                            libusb_exit(ctx)
                            throw TransportError.unreachable("cannot open \(record.location): \(usbErrorName(orc))")
                        }
                        break
                    }
                }
                libusb_free_device_list(list, 1)
            }
            guard let h = found else {
                libusb_exit(ctx)
                throw TransportError.unreachable("\(record.location) is not visible to libusb")
            }
            let claim = libusb_claim_interface(h, 0)
            guard claim == 0 else {
                libusb_close(h)
                libusb_exit(ctx)
                throw TransportError.unreachable("cannot claim interface 0 of \(record.location): \(usbErrorName(claim))")
            }
            context = UnsafeSendable(ctx)
            handle = UnsafeSendable(h)
            (stream, continuation) = AsyncThrowingStream.makeStream()
            // The first transfers are queued before the event thread exists: nothing can close
            // the handle under them (a device leaving during these submits let the event thread
            // free it while this thread still submitted, and libusb aborted dexad). Their
            // completions wait in the kernel until the thread reaps them.
            var failure: (any Error)?
            do {
                for _ in 0..<transport.inFlight { try submitIn(endpoint: .dataIn) }
                for _ in 0..<2 { try submitIn(endpoint: .responseIn) }
            } catch {
                failure = error
            }
            let thread = Thread { [self] in self.eventLoop() }
            thread.name = "dexa-usb-events"
            thread.start()
            if let failure {
                shutdown(reason: "cannot queue transfers", error: failure)
                throw failure
            }
        }

        private func eventLoop() {
            while true {
                // Deadline-based: libusb may return early (and under umockdev it often does).
                while running.withLock({ $0 }) || !live.withLock({ $0.isEmpty }) || TransferBox.count(owner: self) > 0 {
                    var tv = timeval(tv_sec: 0, tv_usec: 200_000)
                    _ = libusb_handle_events_timeout_completed(context.value, &tv, nil)
                }
                // Closed under the gate, and only with no transfer in flight and none left to
                // free: a send that got in between the loop's test and here has its callback
                // delivered first, and a transfer freed after the handle and the context would
                // have libusb read both through it (`libusb_free_transfer` logs with the
                // transfer's context: a send's box released on a task thread after the close
                // once made dexad jump through freed memory; docs/RELIABILITY.md).
                let closed = open.withLock { isOpen -> Bool in
                    guard live.withLock({ $0.isEmpty }), TransferBox.count(owner: self) == 0 else { return false }
                    isOpen = false
                    libusb_release_interface(handle.value, 0)
                    libusb_close(handle.value)
                    libusb_exit(context.value)
                    return true
                }
                if closed { break }
            }
            eventThreadDone.withLock { $0 = true }
        }

        // MARK: IN

        private func submitIn(endpoint: Endpoint) throws {
            let box = TransferBox(size: transferSize, owner: self, endpoint: endpoint)
            live.withLock { _ = $0.insert(ObjectIdentifier(box)) }
            libusb_fill_bulk_transfer(box.transfer, handle.value, endpoint.rawValue, box.buffer, Int32(transferSize),
                                      inCallback, Unmanaged.passRetained(box).toOpaque(), 0)
            let rc = libusb_submit_transfer(box.transfer)
            if rc != 0 {
                Unmanaged.passUnretained(box).release()
                live.withLock { _ = $0.remove(ObjectIdentifier(box)) }
                throw TransportError.io("submit on 0x\(String(endpoint.rawValue, radix: 16)): \(usbErrorName(rc))")
            }
        }

        /// Called on the event thread when an IN transfer ends.
        fileprivate func inCompleted(_ box: TransferBox) {
            let t = box.transfer.pointee
            switch t.status {
            case LIBUSB_TRANSFER_COMPLETED:
                if t.actual_length > 0 {
                    continuation.yield(TransportChunk(endpoint: box.endpoint, bytes: Array(UnsafeBufferPointer(start: box.buffer, count: Int(t.actual_length)))))
                }
                resubmit(box)
            case LIBUSB_TRANSFER_STALL:
                // Clear the halt off the event thread (libusb_clear_halt is synchronous), then go on.
                logger.warning("endpoint stalled; clearing halt", metadata: ["endpoint": "0x\(String(box.endpoint.rawValue, radix: 16))"])
                Thread.detachNewThread { [self] in
                    let rc = open.withLock { $0 ? libusb_clear_halt(handle.value, box.endpoint.rawValue) : LIBUSB_ERROR_NO_DEVICE.rawValue }
                    if rc != 0 { logger.error("clear halt failed", metadata: ["error": "\(usbErrorName(rc))"]) }
                    resubmit(box)
                }
            case LIBUSB_TRANSFER_OVERFLOW:
                logger.error("transfer overflow", metadata: ["endpoint": "0x\(String(box.endpoint.rawValue, radix: 16))"])
                resubmit(box)
            case LIBUSB_TRANSFER_TIMED_OUT:
                resubmit(box)
            case LIBUSB_TRANSFER_NO_DEVICE:
                retire(box)
                shutdown(reason: "device disconnected", error: TransportError.disconnected("the DX-1 left the bus"))
            case LIBUSB_TRANSFER_CANCELLED:
                retire(box)
            default:
                retire(box)
                shutdown(reason: "transfer error", error: TransportError.io("transfer on 0x\(String(box.endpoint.rawValue, radix: 16)) failed (status \(t.status.rawValue))"))
            }
        }

        private func resubmit(_ box: TransferBox) {
            // Under the gate, and `running` tested there: a shutdown clears it before its
            // cancellation sweep, so a transfer submitted here is either swept or never sent.
            let submitted: Int32? = open.withLock { isOpen in
                guard isOpen, running.withLock({ $0 }) else { return nil }
                return libusb_submit_transfer(box.transfer)
            }
            guard let rc = submitted else { retire(box); return }
            if rc != 0 {
                retire(box)
                shutdown(reason: "resubmit failed", error: TransportError.disconnected("cannot resubmit a transfer: the DX-1 left the bus"))
            }
        }

        private func retire(_ box: TransferBox) {
            live.withLock { _ = $0.remove(ObjectIdentifier(box)) }
            Unmanaged.passUnretained(box).release()
        }

        // MARK: OUT

        func send(_ bytes: [UInt8]) async throws {
            guard running.withLock({ $0 }) else { throw TransportError.disconnected("link closed") }
            let box = TransferBox(size: max(bytes.count, 1), owner: self, endpoint: .commandOut)
            bytes.withUnsafeBufferPointer { src in box.buffer.update(from: src.baseAddress!, count: bytes.count) }
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                box.completion = c
                // Under the gate, and only while the link runs: the event thread frees the
                // handle once it has stopped and no transfer is in flight.
                let submitted = open.withLock { isOpen -> Int32? in
                    guard isOpen, running.withLock({ $0 }) else { return nil }
                    live.withLock { _ = $0.insert(ObjectIdentifier(box)) }
                    libusb_fill_bulk_transfer(box.transfer, handle.value, Endpoint.commandOut.rawValue, box.buffer, Int32(bytes.count),
                                              outCallback, Unmanaged.passRetained(box).toOpaque(), outTimeoutMs)
                    return libusb_submit_transfer(box.transfer)
                }
                guard let rc = submitted else {
                    box.completion = nil
                    c.resume(throwing: TransportError.disconnected("link closed"))
                    return
                }
                if rc != 0 {
                    box.completion = nil
                    retire(box)
                    c.resume(throwing: rc == LIBUSB_ERROR_NO_DEVICE.rawValue
                        ? TransportError.disconnected("the DX-1 left the bus") : TransportError.io("submit OUT: \(usbErrorName(rc))"))
                }
            }
        }

        fileprivate func outCompleted(_ box: TransferBox) {
            let t = box.transfer.pointee
            let c = box.completion
            box.completion = nil
            retire(box)
            switch t.status {
            case LIBUSB_TRANSFER_COMPLETED where t.actual_length == t.length: c?.resume()
            case LIBUSB_TRANSFER_COMPLETED: c?.resume(throwing: TransportError.io("short write: \(t.actual_length) of \(t.length) bytes"))
            case LIBUSB_TRANSFER_TIMED_OUT: c?.resume(throwing: TransportError.timeout(.commandOut))
            case LIBUSB_TRANSFER_STALL:
                Thread.detachNewThread { [self] in _ = open.withLock { $0 ? libusb_clear_halt(handle.value, Endpoint.commandOut.rawValue) : 0 } }
                c?.resume(throwing: TransportError.stall(.commandOut))
            case LIBUSB_TRANSFER_NO_DEVICE: c?.resume(throwing: TransportError.disconnected("the DX-1 left the bus"))
            case LIBUSB_TRANSFER_CANCELLED: c?.resume(throwing: TransportError.disconnected("link closed"))
            default: c?.resume(throwing: TransportError.io("OUT transfer failed (status \(t.status.rawValue))"))
            }
        }

        // MARK: Shutdown

        /// Cancels every transfer and ends the incoming stream; the event thread finishes
        /// the cancellations, then closes the device.
        func shutdown(reason: String, error: (any Error)? = nil) {
            let wasRunning = running.withLock { r in defer { r = false }; return r }
            guard wasRunning else { return }
            open.withLock { isOpen in
                guard isOpen else { return }
                for box in TransferBox.all(owner: self) { _ = libusb_cancel_transfer(box.transfer) }
                libusb_interrupt_event_handler(context.value)
            }
            if let error { continuation.finish(throwing: error) } else { continuation.finish() }
        }

        /// Transfers still owned by libusb (for tests: none may leak).
        var liveTransfers: Int { live.withLock { $0.count } }
    }
}

/// A libusb transfer and the buffer it reads into or writes from, alive for the whole flight:
/// retained through `user_data` while libusb holds it, freed with it.
final class TransferBox: @unchecked Sendable {
    // @unchecked: the box is touched by the submitting thread until libusb_submit_transfer,
    // then only by the event thread's completion callback, which is the sole owner from then
    // on (libusb never runs two callbacks for one transfer); `completion` is written before
    // submission and read once in the callback.
    let transfer: UnsafeMutablePointer<libusb_transfer>
    let buffer: UnsafeMutablePointer<UInt8>
    let endpoint: Endpoint
    weak var owner: USBTransport.Link?
    var completion: CheckedContinuation<Void, any Error>?

    private static let registry = Mutex<[ObjectIdentifier: Weak]>([:])
    /// The box (nil once it is being freed) and the link it belongs to, which stays counted
    /// until its transfer has been freed.
    struct Weak: @unchecked Sendable {  // read under the registry's lock only
        weak var box: TransferBox?
        let owner: ObjectIdentifier
    }

    init(size: Int, owner: USBTransport.Link, endpoint: Endpoint) {
        transfer = libusb_alloc_transfer(0)
        buffer = .allocate(capacity: size)
        buffer.initialize(repeating: 0, count: size)
        self.owner = owner
        self.endpoint = endpoint
        let id = ObjectIdentifier(self)
        Self.registry.withLock { $0[id] = Weak(box: self, owner: ObjectIdentifier(owner)) }
    }

    static func all(owner: USBTransport.Link) -> [TransferBox] {
        registry.withLock { r in r.values.compactMap { $0.box }.filter { $0.owner === owner } }
    }

    /// The link's transfers not yet freed, in flight or not: its handle and context must
    /// outlive them.
    static func count(owner: USBTransport.Link) -> Int {
        let id = ObjectIdentifier(owner)
        return registry.withLock { r in r.values.filter { $0.owner == id }.count }
    }

    deinit {
        // Freed first, counted out after: the link closes its handle and context only when
        // none of its transfers is left to free.
        libusb_free_transfer(transfer)
        buffer.deallocate()
        let id = ObjectIdentifier(self)
        Self.registry.withLock { _ = $0.removeValue(forKey: id) }
    }
}

private let inCallback: libusb_transfer_cb_fn = { t in
    guard let t, let ud = t.pointee.user_data else { return }
    let box = Unmanaged<TransferBox>.fromOpaque(ud).takeUnretainedValue()
    box.owner?.inCompleted(box)
}

private let outCallback: libusb_transfer_cb_fn = { t in
    guard let t, let ud = t.pointee.user_data else { return }
    let box = Unmanaged<TransferBox>.fromOpaque(ud).takeUnretainedValue()
    box.owner?.outCompleted(box)
}
