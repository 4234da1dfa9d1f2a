// A connected pair; inline
// completion off; one 1-byte sock_send_async with a delegate; wait for the
// callback; close everything; sock_cleanup(); return from Main. Before
// sock_cleanup existed Mono never exited once a managed callback had run on
// the default engine's thread.
//
//   mono Cleanup.exe                  calls sock_cleanup() before returning (exit 0)
//   mono Cleanup.exe --process-exit   calls it from AppDomain.ProcessExit instead
//   mono Cleanup.exe --no-cleanup     does not call it (the old hang)
using System;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

static class Cleanup
{
    const string Lib = "libsock.so";
    const int SOCK_FAMILY_INET = 1, SOCK_TYPE_STREAM = 1;
    const int SOCK_OK = 0, SOCK_IO_PENDING = 997;
    const int SOCK_OPT_ASYNC_INLINE_COMPLETION = 11;

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    delegate void SendCallback(ulong h, int status, UIntPtr bytesSent, IntPtr userData);

    [DllImport(Lib)] static extern int sock_socket(int family, int type, out ulong h);
    [DllImport(Lib)] static extern int sock_bind(ulong h, [MarshalAs(UnmanagedType.LPStr)] string address);
    [DllImport(Lib)] static extern int sock_listen(ulong h, int backlog);
    [DllImport(Lib)] static extern int sock_connect(ulong h, [MarshalAs(UnmanagedType.LPStr)] string address);
    [DllImport(Lib)] static extern int sock_accept(ulong h, out ulong accepted);
    [DllImport(Lib)] static extern int sock_local_address(ulong h, byte[] buf, UIntPtr cap, out UIntPtr len);
    [DllImport(Lib)] static extern int sock_set_option(ulong h, int option, long value);
    [DllImport(Lib)] static extern int sock_send_async(ulong h, IntPtr buf, UIntPtr len, int flags,
                                                        SendCallback onDone, IntPtr userData, out UIntPtr sentNow);
    [DllImport(Lib)] static extern int sock_recv(ulong h, byte[] buf, UIntPtr cap, int flags, out UIntPtr received);
    [DllImport(Lib)] static extern int sock_close(ulong h);
    [DllImport(Lib)] static extern int sock_cleanup();
    // A static string of the library: IntPtr, never string (the marshaller would free it).
    [DllImport(Lib)] static extern IntPtr sock_strerror(int status);

    static readonly ManualResetEventSlim Done = new ManualResetEventSlim(false);
    static int doneStatus = -1;
    static ulong doneBytes;
    // Kept in a static field: the GC must not collect the delegate while C holds its pointer.
    static readonly SendCallback OnSent = (h, status, bytes, ud) =>
    {
        try { doneStatus = status; doneBytes = bytes.ToUInt64(); Done.Set(); }
        catch { /* never let an exception unwind into C */ }
    };

    static void Check(int status, string what)
    {
        if (status != SOCK_OK)
            throw new Exception(what + ": " + status + " " + Marshal.PtrToStringAnsi(sock_strerror(status)));
    }

    static int Main(string[] args)
    {
        string mode = args.Length > 0 ? args[0] : "";
        if (mode == "--process-exit")
            AppDomain.CurrentDomain.ProcessExit += (s, e) => Console.WriteLine("ProcessExit: sock_cleanup " + sock_cleanup());

        ulong listener, client, server;
        Check(sock_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM, out listener), "socket");
        Check(sock_bind(listener, "127.0.0.1:0"), "bind");
        Check(sock_listen(listener, 1), "listen");
        var text = new byte[128];
        UIntPtr len;
        Check(sock_local_address(listener, text, (UIntPtr)text.Length, out len), "local_address");
        string address = Encoding.ASCII.GetString(text, 0, (int)len.ToUInt32() - 1);
        Check(sock_socket(SOCK_FAMILY_INET, SOCK_TYPE_STREAM, out client), "socket");
        Check(sock_connect(client, address), "connect");
        Check(sock_accept(listener, out server), "accept");
        Check(sock_set_option(client, SOCK_OPT_ASYNC_INLINE_COMPLETION, 0), "inline off");

        // Pinned until the callback ran: the GC may move an unpinned byte[].
        var one = new byte[] { 42 };
        GCHandle pin = GCHandle.Alloc(one, GCHandleType.Pinned);
        UIntPtr now;
        int st = sock_send_async(client, pin.AddrOfPinnedObject(), (UIntPtr)1, 0, OnSent, IntPtr.Zero, out now);
        if (st != SOCK_IO_PENDING) throw new Exception("sock_send_async: expected SOCK_IO_PENDING, got " + st);
        if (!Done.Wait(10000)) throw new Exception("the callback did not run");
        pin.Free();
        Console.WriteLine("callback: status " + doneStatus + ", " + doneBytes + " byte");

        var got = new byte[1];
        UIntPtr received;
        Check(sock_recv(server, got, (UIntPtr)1, 0, out received), "recv");
        if (received.ToUInt64() != 1 || got[0] != 42) throw new Exception("the byte did not arrive");

        Check(sock_close(client), "close");
        Check(sock_close(server), "close");
        Check(sock_close(listener), "close");
        if (mode == "")
            Console.WriteLine("sock_cleanup: " + sock_cleanup());
        Console.WriteLine("returning from Main");
        return 0;
    }
}
