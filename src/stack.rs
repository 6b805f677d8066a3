//! The pages of a thread's stack that one deep call left resident, given
//! back.
//!
//! A page of stack that a thread touches stays resident for the rest of the
//! thread's life. A connection thread's read loop fits in two pages, but a
//! TLS handshake runs its key exchange and signature on the same stack and
//! reaches 28 KiB down: every wss:// connection kept those seven pages for
//! as long as it was open, 20 KiB more than a ws:// one. So once the
//! handshake is done the connection's thread hands the kernel back the
//! pages below its frame ([`release_below`]), and a deeper call later
//! touches fresh ones, as a new thread would.

use std::cell::Cell;
use std::io;
use std::mem::MaybeUninit;

thread_local! {
    /// The calling thread's [`lowest_address`], once asked: a stack does
    /// not move, and asking glibc also reads the thread's CPU affinity.
    static LOWEST: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Gives back to the kernel every page of the calling thread's stack below
/// the page it runs in and the one below that.
///
/// Nothing there is live: a stack grows down from its deepest frame, which
/// is this function's, and the frames of the system call it makes fit in
/// the page kept below it. A page given back reads as zeros when it is
/// touched again, as a stack page does the first time.
///
/// # Errors
///
/// When the thread's stack cannot be found, or the kernel refuses.
#[allow(unsafe_code)]
#[inline(never)]
pub(crate) fn release_below() -> io::Result<()> {
    let page = page_size();
    let kept_from = (here() & !(page - 1)).saturating_sub(page);
    let lowest = lowest_address()?;
    if kept_from <= lowest {
        return Ok(());
    }
    // SAFETY: [lowest, kept_from) is the calling thread's own stack, all of
    // it below the live frames (above); the call neither reads nor writes
    // memory of ours.
    let done = unsafe { libc::madvise(lowest as *mut libc::c_void, kept_from - lowest, libc::MADV_DONTNEED) };
    if done != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An address in the caller's frame: where the stack is now.
#[inline(always)]
fn here() -> usize {
    let marker = 0u8;
    std::hint::black_box(&raw const marker) as usize
}

#[allow(unsafe_code)]
fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// The lowest address of the calling thread's stack.
fn lowest_address() -> io::Result<usize> {
    if let Some(lowest) = LOWEST.get() {
        return Ok(lowest);
    }
    let lowest = ask_lowest_address()?;
    LOWEST.set(Some(lowest));
    Ok(lowest)
}

#[allow(unsafe_code)]
fn ask_lowest_address() -> io::Result<usize> {
    let mut attributes = MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: pthread_getattr_np fills `attributes` when it returns 0; only
    // then are they read, and destroyed once, after the last read.
    unsafe {
        let error = libc::pthread_getattr_np(libc::pthread_self(), attributes.as_mut_ptr());
        if error != 0 {
            return Err(io::Error::from_raw_os_error(error));
        }
        let mut address = std::ptr::null_mut();
        let mut size = 0;
        let error = libc::pthread_attr_getstack(attributes.as_ptr(), &raw mut address, &raw mut size);
        libc::pthread_attr_destroy(attributes.as_mut_ptr());
        if error != 0 {
            return Err(io::Error::from_raw_os_error(error));
        }
        Ok(address as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Touches about `kib` KiB of stack below the caller.
    #[inline(never)]
    fn deep(kib: usize) -> u8 {
        let block = std::hint::black_box([kib as u8; 1024]);
        if kib == 0 { block[0] } else { deep(kib - 1).wrapping_add(block[1023]) }
    }

    /// How many pages of the calling thread's stack are resident below
    /// those [`release_below`] keeps when called from here (its frame may
    /// start a page lower than the caller's).
    #[allow(unsafe_code)]
    #[inline(always)]
    fn resident_below_here() -> usize {
        let page = page_size();
        let kept_from = (here() & !(page - 1)) - 2 * page;
        let lowest = lowest_address().unwrap();
        let mut pages = vec![0u8; (kept_from - lowest) / page];
        // SAFETY: the range is this thread's stack, mapped; `pages` has one
        // byte for each of its pages.
        let done =
            unsafe { libc::mincore(lowest as *mut libc::c_void, kept_from - lowest, pages.as_mut_ptr()) };
        assert_eq!(done, 0, "{}", io::Error::last_os_error());
        pages.iter().filter(|state| *state & 1 == 1).count()
    }

    #[test]
    fn the_pages_a_deep_call_touched_are_given_back() {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                std::hint::black_box(deep(48));
                let before = resident_below_here();
                assert!(before >= 8, "the deep call touched {before} pages");
                release_below().unwrap();
                assert_eq!(resident_below_here(), 0);
                // The stack is still usable, deep down.
                assert_eq!(deep(48), deep(48));
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
